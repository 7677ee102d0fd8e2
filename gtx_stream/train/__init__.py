"""Training: fine-tune EfficientNet-Lite0 on an exported dataset folder (optional extra ``train``).

``data`` and ``progress`` need no torch; ``model``, ``fit`` and ``labeler`` import it, and only
``gtx-stream train`` (inside its command function) and the ``python`` labeler load them.
"""
