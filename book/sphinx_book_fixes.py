"""Sphinx fixes for the batchbald_nb book, loaded by tools/build_book.py as a jupyter-book local extension.

Thebe (run the code on a remote kernel) is off: the book reads offline and has no launch buttons. sphinx-thebe 0.3.1 still adds its
configuration script on every page, and under Sphinx 7.4 adds it twice, which is a `const` redeclared: a SyntaxError in every page's
console. Its page scripts are not connected at all here.
"""


def _drop_thebe_scripts(app):
    for listener in list(app.events.listeners.get("env-before-read-docs", [])):
        if getattr(listener.handler, "__name__", "") == "init_thebe_core":
            app.disconnect(listener.id)


def setup(app):
    app.connect("builder-inited", _drop_thebe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
