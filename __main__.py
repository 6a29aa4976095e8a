"""Pulumi entry point: `pulumi up` runs this; the program lives in convai_stack."""

from convai_stack.program import main

main()
