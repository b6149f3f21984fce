"""Exceptions to the access policy (dérogations): storage and services.

An RSSI grants a time-boxed, justified exception for one class of applications to one person or to a
population (optionally narrowed to units); it expires on its own date, can be revoked, and every use is
journaled. What may be relaxed, and the two-factor floor, are decided by the pure
:mod:`hospiconnect.policies.relaxations`; this package stores the grants and hands the provider
:class:`~hospiconnect.policies.relaxations.ExceptionGrant` values (:func:`services.active_exceptions_for`).

It sits below the provider (which applies exceptions at sign-in) and below the trajectory (which reports them),
and above the directory, the MIE layer and the journal (import-linter layers in pyproject.toml).
"""
