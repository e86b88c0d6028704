"""The marker plugins put on their hook implementations: `@cisfix.hookimpl`."""
import pluggy

hookimpl = pluggy.HookimplMarker("cisfix")
