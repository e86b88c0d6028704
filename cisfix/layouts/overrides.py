"""A layout's components as the node configuration file adjusts them (`components.<name>` in
`<root>/etc/cisfix/config.yaml`): every layout reads the same keys the same way."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, Mapping

from ..types import Component


def configured(base: Component, settings: Mapping[str, Any]) -> Component:
    """`base` with what the node configuration says of it (see node-config.schema.json)."""
    return replace(
        base, manifest=settings.get("manifest", base.manifest), config=settings.get("config", base.config),
        flag_files=tuple(settings.get("flagFiles", base.flag_files)), process=settings.get("process", base.process),
        health=settings.get("health", base.health), restart=tuple(settings.get("restart", base.restart)),
        reload=tuple(settings.get("reload", base.reload)),
        depends_on=tuple(settings.get("dependsOn", base.depends_on)),
        live_config=settings.get("liveConfig", base.live_config), unit=settings.get("unit", base.unit),
        logs=(settings["log"],) if "log" in settings else base.logs,
        config_dir_flag=settings.get("configDirFlag", base.config_dir_flag),
        config_dir=settings.get("configDir", base.config_dir))


def configured_components(base: Mapping[str, Component], config: Mapping[str, Any]) -> Dict[str, Component]:
    """The layout's components, each adjusted by the node configuration, plus any it adds."""
    settings = config.get("components", {})
    return {name: configured(base.get(name, Component(name)), settings.get(name, {}))
            for name in sorted({*base, *settings})}
