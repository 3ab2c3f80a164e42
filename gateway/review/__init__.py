"""Human review decisions (sign-offs) as pure functions of campaign records."""
