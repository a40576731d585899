"""A test double for AWS's Lambda base image (stand_in.py), the recipe beside it."""
