"""Griffe extension: ``#:`` comments above a module attribute are its docstring.

``user_credits.signals`` documents each signal the way Sphinx and django-anymail do (a ``#:``
comment with "provides args"); this makes mkdocstrings render them from the source as well.
"""

import griffe


class CommentDocstrings(griffe.Extension):
    def on_attribute_instance(self, *, node, attr, agent, **kwargs):
        if attr.docstring is not None or attr.lineno is None:
            return
        lines = getattr(agent, "code", "").splitlines()  # the module's source (static visit)
        comment = []
        number = min(attr.lineno - 2, len(lines) - 1)  # the line above, 0-based
        while number >= 0 and lines[number].lstrip().startswith("#:"):
            comment.insert(0, lines[number].lstrip()[2:].strip())
            number -= 1
        if comment:
            attr.docstring = griffe.Docstring(
                " ".join(comment), lineno=number + 2, parent=attr
            )
