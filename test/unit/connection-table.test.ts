import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ConnectionTable } from '../../runtime/protocols/connection-table.ts'

test('a full table forgets a connection not used since it came up, giving used ones a second chance, and counts it', () => {
  const evicted: [string, number][] = []
  const table = new ConnectionTable<string>(3, (conn, id) => evicted.push([conn, id]))
  table.set(1, 'a')
  table.set(2, 'b')
  table.set(3, 'c')
  assert.equal(table.get(1), 'a') // used: survives the next eviction
  table.set(4, 'd')
  assert.deepEqual(evicted, [['b', 2]])
  assert.equal(table.size, 3)
  // 1 had its second chance (its flag is cleared), 3 was never used: 3 goes next, then 1
  table.set(5, 'e')
  table.set(6, 'f')
  assert.deepEqual(evicted, [['b', 2], ['c', 3], ['a', 1]])
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((id) => table.get(id)), [undefined, undefined, undefined, 'd', 'e', 'f'])
  assert.equal(table.delete(4), 'd')
  assert.equal(table.delete(4), undefined)
  assert.deepEqual([table.size, table.evicted], [2, 3])
  assert.throws(() => new ConnectionTable(0, () => {}), /at least one connection/)
})

test('when every connection was used, one pass clears the flags and the oldest goes', () => {
  const evicted: number[] = []
  const table = new ConnectionTable<number>(2, (_, id) => evicted.push(id))
  table.set(1, 1)
  table.set(2, 2)
  table.get(1)
  table.get(2)
  table.set(3, 3)
  assert.deepEqual(evicted, [1])
})
