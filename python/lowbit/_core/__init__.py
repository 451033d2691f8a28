"""The ground floor of lowbit: input checks (checks), scale layouts (layout), 4-bit nibble
packing (nibbles), the runtime (ISA, threads: runtime), adapters for other libraries'
objects (adapters) and the one median timer (timing). Imports nothing else of lowbit."""
