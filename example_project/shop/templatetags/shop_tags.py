"""The header's holder switcher: in the workspaces mode, which team's credits the pages show."""

from django import template

from user_credits.holders import holder_from_request, holder_is_user

register = template.Library()


@register.inclusion_tag("shop/holder_switcher.html", takes_context=True)
def holder_switcher(context):
    """Nothing when the users hold their own credits; else the user's workspaces, the current
    one (``HOLDER_FROM_REQUEST``'s answer) selected."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if holder_is_user() or user is None or not user.is_authenticated:
        return {"choices": []}
    from example_project.workspaces.hooks import user_workspaces

    current = holder_from_request(request)
    return {
        "choices": list(user_workspaces(user)),
        "current": getattr(current, "pk", None),
        "path": request.path,
    }
