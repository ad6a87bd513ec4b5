package scripts

import "regexp"

// secretNameRE is the secrets package's rule for a secret name
// (secrets.CheckName), which this package cannot import: secrets imports
// scripts. A test keeps the two in agreement.
var secretNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// tokenSecret checks a webhook's tokenSecret: empty (no token required) or
// the name of a project secret.
func (v *validator) tokenSecret(field, name string) {
	if name == "" && !v.given(field) {
		return
	}
	if !secretNameRE.MatchString(name) {
		v.errf(field, "tokenSecret %q is not a valid secret name: 1 to 128 ASCII letters, digits and \"_\", not starting with a digit", name)
	}
}
