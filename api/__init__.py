"""The HTTP face: the Integrations API (`/v1`), the providers' webhook receiver, the page.

On top of everything else: `api -> worker -> scheduler -> models`. Routes call the
operator service (`worker.operator.Operator`) and the serialisers, never the tables.
"""
