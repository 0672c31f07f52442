// Fake of ComfyUI's `scripts/app.js` shim: only what the Hikaze extension touches.
// (ComfyUI's real frontend keeps this path as a shim over window.comfyAPI.)
export const app = {
  extensions: [],
  dirtyCalls: [],
  registerExtension(extension) {
    this.extensions.push(extension);
  },
  graph: {
    setDirtyCanvas(foreground, background) {
      app.dirtyCalls.push([foreground, background]);
    },
  },
  extensionManager: {
    workflow: {
      activeWorkflow: {
        changeTracker: {
          checks: 0,
          checkState() {
            this.checks += 1;
          },
        },
      },
    },
  },
};
