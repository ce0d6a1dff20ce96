"""The SIP door: a small RFC 3261 UAS on real UDP, TCP (and optional TLS) sockets.

``transport`` owns the sockets (``framing`` cuts streams into messages);
``uas`` decides what the fake trunk does with each message, over
``transactions``/``dialogs`` (transition tables on ``timers``), ``admission``
(X-EI and call correlation), ``script`` (the call's SIP plan), ``responses`` and
``recorder`` (the journal). ``runner`` runs it as the standalone server's SIP
child or in a thread beside a test.
"""
