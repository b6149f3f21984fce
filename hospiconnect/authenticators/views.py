"""Placeholder blueprint for the self-service page « Mes moyens d'identification »."""

from flask import Blueprint

bp = Blueprint("mie", __name__)
