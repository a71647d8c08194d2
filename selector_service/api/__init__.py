"""The HTTP layer: the app factory, middleware, the uniform error body, request and response schemas,
and one thin router per resource (parse the request, call the domain or the cache, shape the answer)."""
