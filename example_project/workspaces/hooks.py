"""The two ``USER_CREDITS`` hooks of the workspaces mode (DESIGN §6)."""

from .models import Workspace


def current_workspace(request):
    """``HOLDER_FROM_REQUEST``: the workspace chosen in the session (``?workspace=<slug>`` on
    any page chooses it), else the user's first one; ``None`` for an anonymous request."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    mine = user_workspaces(user)
    slug = request.GET.get("workspace") or request.session.get("workspace")
    chosen = mine.filter(slug=slug).first() if slug else None
    if chosen is not None:
        request.session["workspace"] = chosen.slug
    return chosen or mine.first()


def is_member(user, workspace):
    """``CAN_SPEND``: the owner and the members of the workspace."""
    return isinstance(workspace, Workspace) and workspace.has_member(user)


def user_workspaces(user):
    """The workspaces ``user`` owns or is a member of, oldest first."""
    mine = Workspace.objects.filter(members=user) | Workspace.objects.filter(owner=user)
    return mine.distinct().order_by("pk")
