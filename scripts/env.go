package scripts

import (
	"maps"
	"regexp"
	"slices"
)

// envKeyRE is the form of an env name: what a script can write as env.NAME.
var envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// maxEnvBytes bounds the manifest's env as a whole.
const maxEnvBytes = 64 << 10

// env checks the manifest's env: settings scripts read as env.NAME.
func (v *validator) env() {
	size := 0
	for _, k := range slices.Sorted(maps.Keys(v.m.Env)) {
		if !envKeyRE.MatchString(k) {
			v.errf("env."+k, "env name %q must start with a letter or _ and hold only letters, digits and _ (at most 128)", k)
		}
		size += len(k) + len(v.m.Env[k])
	}
	if size > maxEnvBytes {
		v.errf("env", "env holds %d bytes, more than the %d allowed; keep large data in the bundle's files", size, maxEnvBytes)
	}
}
