// Package docs is the user reference of opsrunner, written in Markdown
// beside this file. It has no code: its tests check that the README and
// these pages link only to files of the repository and point nowhere
// outside it, and that the deployment examples under deploy/ use only
// configuration variables the reference lists.
package docs
