"""The link service (``smarketing serve``): one-click unsubscribe and tracked review/share redirects."""

from smarketing_tasks.links.app import create_app

__all__ = ["create_app"]
