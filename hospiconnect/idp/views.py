"""Placeholder blueprint, filled in by the identity provider."""

from flask import Blueprint

bp = Blueprint("idp_views", __name__)
