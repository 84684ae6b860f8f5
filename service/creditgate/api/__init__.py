"""The HTTP API: routes, schemas, errors, auth context, request middleware, OpenAPI."""

from creditgate.api.context import Services
from creditgate.api.framework import Operation
from creditgate.api.routes import OPERATIONS

__all__ = ["OPERATIONS", "Operation", "Services"]
