"""The API: its routes and the page, and the checks every API Gateway event passes before them."""
