"""One router per resource; no route module imports another."""
