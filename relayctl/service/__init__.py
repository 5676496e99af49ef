"""The OS service managers relayctl installs relayd under, and detect(): the one place that
decides which one this machine has. manager.py holds what the backends share (ServiceManager,
templates, log files), plan.py the plans they return; systemd.py, launchd.py and windows.py
import only those two.
"""

from __future__ import annotations

from relayctl.service.manager import BACKEND_ENV, ServiceManager, backend_name
from relayctl.service.plan import ServiceError


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
