//! pcitrack: the agent library.
