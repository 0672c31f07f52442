// Fake of ComfyUI's `scripts/api.js` shim: fetchApi adds the /api prefix like the real one.
export const api = {
  apiURL(route) {
    return "/api" + route;
  },
  fetchApi(route, options) {
    return fetch(this.apiURL(route), options);
  },
};
