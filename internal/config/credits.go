// Credits: the products' credit keys and the consume endpoint's service
// tokens, and their validation.
package config

import "fmt"

// Credits configures the credit ledger's API.
type Credits struct {
	// ServiceTokens authenticate the seller's backend on
	// POST /api/credits/consume; with none, that endpoint does not exist.
	ServiceTokens []string `yaml:"service_tokens"`
}

// minServiceToken is the shortest credits service token accepted.
const minServiceToken = 32

// validateCredits checks every product's credit keys and the service
// tokens, reporting each problem through add.
func (c *Config) validateCredits(add func(key, format string, args ...any)) {
	for i, prod := range c.Products {
		key := fmt.Sprintf("products[%d]", i)
		switch {
		case prod.Credits < 0:
			add(key+".credits", "must be a positive number of credits, got %d", prod.Credits)
		case prod.Credits == 0 && prod.CreditsRollover:
			add(key+".credits_rollover", "is set but the product grants no credits (products[].credits)")
		case prod.Credits == 0 && prod.CreditsLowThreshold != nil:
			add(key+".credits_low_threshold", "is set but the product grants no credits (products[].credits)")
		}
		if prod.CreditsLowThreshold != nil && *prod.CreditsLowThreshold < 0 {
			add(key+".credits_low_threshold", "must be 0 or more, got %d", *prod.CreditsLowThreshold)
		}
	}
	for i, tok := range c.Credits.ServiceTokens {
		if len(tok) < minServiceToken {
			add(fmt.Sprintf("credits.service_tokens[%d]", i), "must be at least %d characters", minServiceToken)
		}
	}
}
