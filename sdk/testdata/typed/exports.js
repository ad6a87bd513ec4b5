// exports.handle, an operation called with RunOperation(ref, true, input).

/**
 * @param {{sku: string, qty: number}} item
 * @param {opsrunner.Context} ctx
 */
exports.handle = function (item, ctx) {
  return { sku: item.sku, total: item.qty * 2, by: ctx.operation };
};
