package destpattern_test

import (
	"fmt"

	"github.com/opsrunner/opsrunner/destpattern"
)

func ExampleMatch() {
	fmt.Println(destpattern.Match("/queue/orders.*", "/queue/orders.eu.in"))
	fmt.Println(destpattern.Match("/queue/orders.*", "/queue/billing.in"))
	// Output:
	// true
	// false
}
