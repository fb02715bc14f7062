"""The HTTP routes: pages, JSON API, organizer screens, health and metrics."""
