package secrets_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opsrunner/opsrunner/secrets"
	"github.com/opsrunner/opsrunner/store"
)

// A vault over an agent's store: the store keeps only sealed values.
func ExampleVault() {
	dir, _ := os.MkdirTemp("", "secrets-example")
	defer os.RemoveAll(dir)
	key, _ := secrets.LoadKey("", dir) // generates dir/secrets.key the first time
	st, _ := store.OpenBolt(filepath.Join(dir, "opsrunner.db"), store.BoltOptions{})
	defer st.Close()
	vault, _ := secrets.NewVault(key, st)

	ctx := context.Background()
	_ = vault.Set(ctx, "shop", "API_KEY", []byte("k-123"))
	value, ok, _ := vault.Get(ctx, "shop", "API_KEY")
	fmt.Println(value, ok)
	list, _ := vault.List(ctx, "shop")
	fmt.Println(len(list), list[0].Name)
	_, ok, _ = vault.Get(ctx, "shop", "UNSET")
	fmt.Println(ok)
	// Output:
	// k-123 true
	// 1 API_KEY
	// false
}
