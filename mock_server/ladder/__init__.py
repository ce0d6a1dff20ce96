"""One call's journey as a sequence diagram: the model (``model.py``), drawn as text (``text.py``) for
``synthflow-mock ladder`` and as SVG by the web page (``mock_server/ui``), from the same steps."""
