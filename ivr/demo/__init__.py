"""Stand-ins for the customer's own systems, so the example flows work out of the box."""
