"""One router per resource: health, models, inference, metrics, and the browser page."""
