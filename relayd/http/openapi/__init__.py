"""The OpenAPI 3.1 document: reusable components, the operations, and the document built
from the router."""
