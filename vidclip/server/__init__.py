"""`vidclip serve`: a search server and a web app over one store.

app (the FastAPI application: JSON API, OpenAPI docs, the page), access (bind/token/Host rules,
body limit), batcher (concurrent text queries share one forward pass), media (library files by
video_id only, verified against the store; thumbnails; uploaded images), static/ (the page: plain
HTML, JS and CSS, no build step)."""
