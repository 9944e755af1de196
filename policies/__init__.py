"""Policies, one module each. Importing this package registers them."""

from policies import static  # noqa: F401
