"""marshmallow schemas: requests are loaded through them, responses dumped through them."""
