"""Fetching an image from a URL safely: the address policy, the fetcher and its one deadline."""
