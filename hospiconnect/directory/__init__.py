"""The local identity directory (répertoire local) of every professional."""
