import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ConnectionTable } from '../../runtime/protocols/connection-table.ts'

test('the least recently used connection is forgotten when the table is full, and counted', () => {
  const evicted: [string, number][] = []
  const table = new ConnectionTable<string>(2, (conn, id) => evicted.push([conn, id]))
  table.set(1, 'a')
  table.set(2, 'b')
  assert.equal(table.get(1), 'a') // 1 is now the most recently used
  table.set(3, 'c')
  assert.deepEqual(evicted, [['b', 2]])
  assert.deepEqual([...table.values()], ['a', 'c'])
  assert.equal(table.delete(1), 'a')
  assert.equal(table.delete(1), undefined)
  assert.deepEqual([table.size, table.evicted, evicted.length], [1, 1, 1])
  assert.throws(() => new ConnectionTable(0, () => {}), /at least one connection/)
})
