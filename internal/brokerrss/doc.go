// Package brokerrss holds the memory test of the embedded broker as a
// process: the RSS of an `opsrunner broker` child, built without the race
// detector, while 100 slow consumers hang on and after they close.
package brokerrss
