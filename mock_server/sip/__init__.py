"""The SIP door: a small RFC 3261 UAS on real UDP, TCP (and optional TLS) sockets.

``message`` parses and serialises, ``uas`` holds transactions, dialogs and the
policy (X-EI check, call correlation), ``transport`` owns the sockets and
``process`` runs it all as the standalone server's SIP child.
"""
