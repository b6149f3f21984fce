#!/bin/sh
# Entrypoint of the HospiConnect image: runs `hospiconnect` with the container's arguments.
#
# The database password is not part of HOSPICONNECT_DATABASE_URL in a container: `docker inspect` would show
# it. It is read from the file named by HOSPICONNECT_DATABASE_PASSWORD_FILE (a compose secret, mounted under
# /run/secrets) and handed to libpq through PGPASSWORD, in the environment of this process only.
set -eu

if [ -n "${HOSPICONNECT_DATABASE_PASSWORD_FILE:-}" ]; then
  if [ ! -r "$HOSPICONNECT_DATABASE_PASSWORD_FILE" ]; then
    echo "Erreur : HOSPICONNECT_DATABASE_PASSWORD_FILE ($HOSPICONNECT_DATABASE_PASSWORD_FILE) est illisible." >&2
    exit 78
  fi
  PGPASSWORD="$(cat "$HOSPICONNECT_DATABASE_PASSWORD_FILE")"
  export PGPASSWORD
fi

exec hospiconnect "$@"
