"""The integrations page: server-rendered HTML for operators, signed in with an operator key.

`site` builds the page and mounts it on the API; `signin`, `views` and `actions` are its
routes; `session` and `guard` decide who may use it; `statuses` holds what it says about
each status; `templates/` and `static/` ship with the package.
"""
