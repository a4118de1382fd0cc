"""Pricing: rate cards (`rates`), the pure price engine (`engine`), dynamic multipliers (`dynamic`),
discount codes (`discounts`) and signed quote tokens (`quotes`). See docs/adr/0005-pricing-bands.md."""
