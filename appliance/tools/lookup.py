"""``python -m appliance lookup CNIC``: one query from the shell, answered exactly as an SMS
would be (same parser, same templates, same staleness rule)."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..config import FIRMWARE_CONFIG
from ..errors import ConfigError
from ..registry.lookup import Registry, is_stale
from ..rules.responder import DEFAULT_MAX_PARTS, Policy, RegistryState, load_templates, respond



def lookup_main(args: argparse.Namespace) -> int:
    from ..config import load_config

    config = None
    if Path(args.config).exists():
        config = load_config(args.config)
    elif args.registry is None:
        raise ConfigError(f"{args.config}: no such configuration file; pass --config FILE, "
                          "or --registry registry.db to use the shipped reply templates")
    templates_path = config.replies.templates if config else FIRMWARE_CONFIG / "replies.toml"
    templates = load_templates(templates_path)
    registry_path = args.registry or config.registry_path  # type: ignore[union-attr]
    policy = Policy(language=args.language or (config.replies.language if config else "ur"),
                    disclosure=config.replies.disclosure if config else "full",
                    max_cnics=config.replies.max_cnics if config else 3,
                    max_parts=config.replies.max_parts if config else DEFAULT_MAX_PARTS,
                    ref16=any(m.concat_ref16 for m in config.enabled_modems) if config
                    else False)
    max_age = timedelta(hours=config.registry.max_age_hours if config else 72)
    with Registry(registry_path) as registry:
        info = registry.info()
        if not info.exists:
            state = RegistryState.MISSING
        elif not info.usable:
            state = RegistryState.CORRUPT
        elif is_stale(info, max_age, datetime.now(timezone.utc)):
            state = RegistryState.STALE
        else:
            state = RegistryState.OK
        reply = respond(" ".join(args.text), registry.lookup, templates, policy, state)
    print(reply.text)
    if state is not RegistryState.OK:
        print(f"(registry {registry_path}: {state.name.lower()}"
              f"{'; ' + info.error if info.error else ''})")
    return 0 if state is RegistryState.OK else 3
