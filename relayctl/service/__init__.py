"""The OS service managers relayctl installs relayd under, and detect(): the one place that
decides which one this machine has. base.py holds what the backends share (ServiceManager,
Plan, templates); systemd.py, launchd.py and windows.py import only base.
"""

from __future__ import annotations

from relayctl.service.base import BACKEND_ENV, ServiceError, ServiceManager, backend_name


def detect() -> ServiceManager:
    """The service manager for this machine; the only place that decides."""
    name = backend_name()
    if name == "systemd":
        from relayctl.service.systemd import SystemdManager

        return SystemdManager()
    if name == "launchd":
        from relayctl.service.launchd import LaunchdManager

        return LaunchdManager()
    if name == "windows":
        from relayctl.service.windows import WindowsTaskManager

        return WindowsTaskManager()
    raise ServiceError(
        "no supported service manager here (systemd user units, launchd, Windows Task "
        f"Scheduler); run `relayd` under your own supervisor, or set {BACKEND_ENV}"
    )
