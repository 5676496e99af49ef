"""The HTTP layer: the aiohttp app, its middleware, one route module per resource, SSE,
the dashboard and the OpenAPI document."""
