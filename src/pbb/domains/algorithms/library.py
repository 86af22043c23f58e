"""Classic algorithms, written for this project: source, input kind and an English description.

Each entry's source defines one function called ``f`` (renamed to the behaviour's pointer, recursive
calls included). Inputs are small, drawn by the generator named in ``inputs`` (see
:mod:`pbb.domains.algorithms.inputs`). Descriptions say exactly what the code computes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Algorithm:
    key: str
    category: str
    inputs: str
    source: str
    description: str


def _a(key, category, inputs, description, source):
    return Algorithm(key, category, inputs, source.strip("\n"), description)


LIBRARY: list[Algorithm] = [
    # --- sorting and searching ---------------------------------------------------------------
    _a("bubble_sort", "sorting", "list", "Sort the list in ascending order by repeatedly swapping adjacent out-of-order elements; return the sorted list.", """
def f(xs):
    xs = list(xs)
    for i in range(len(xs)):
        for j in range(len(xs) - 1 - i):
            if xs[j] > xs[j + 1]:
                xs[j], xs[j + 1] = xs[j + 1], xs[j]
    return xs
"""),
    _a("insertion_sort", "sorting", "list", "Sort the list in descending order by inserting each element into place among the ones before it; return the sorted list.", """
def f(xs):
    out = []
    for x in xs:
        i = 0
        while i < len(out) and out[i] >= x:
            i += 1
        out.insert(i, x)
    return out
"""),
    _a("selection_sort", "sorting", "list", "Sort the list in ascending order by repeatedly moving the smallest remaining element to the front; return the sorted list.", """
def f(xs):
    xs = list(xs)
    for i in range(len(xs)):
        m = i
        for j in range(i + 1, len(xs)):
            if xs[j] < xs[m]:
                m = j
        xs[i], xs[m] = xs[m], xs[i]
    return xs
"""),
    _a("merge_sort", "sorting", "list", "Sort the list in ascending order by splitting it in halves, sorting each half and merging them; return the sorted list.", """
def f(xs):
    if len(xs) <= 1:
        return list(xs)
    mid = len(xs) // 2
    left, right = f(xs[:mid]), f(xs[mid:])
    out = []
    while left and right:
        out.append(left.pop(0) if left[0] <= right[0] else right.pop(0))
    return out + left + right
"""),
    _a("counting_sort", "sorting", "list_nonneg", "Count how often each value occurs and write the values out from smallest to largest, each as often as it occurred.", """
def f(xs):
    if not xs:
        return []
    counts = [0] * (max(xs) + 1)
    for x in xs:
        counts[x] += 1
    out = []
    for v, c in enumerate(counts):
        out += [v] * c
    return out
"""),
    _a("binary_search", "searching", "sorted_list_target", "Binary search a sorted list for the target; return its index, or -1 if it is absent.", """
def f(xs, target):
    lo, hi = 0, len(xs) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if xs[mid] == target:
            return mid
        if xs[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1
"""),
    _a("linear_search_last", "searching", "list_target", "Return the index of the last occurrence of the target in the list, or -1 if it does not occur.", """
def f(xs, target):
    found = -1
    for i, x in enumerate(xs):
        if x == target:
            found = i
    return found
"""),
    _a("argmax", "searching", "list_nonempty", "Return the index of the first largest element of the list.", """
def f(xs):
    best = 0
    for i in range(1, len(xs)):
        if xs[i] > xs[best]:
            best = i
    return best
"""),
    _a("second_largest", "searching", "list_nonempty", "Return the second largest distinct value of the list, or None if there is only one distinct value.", """
def f(xs):
    values = sorted(set(xs))
    return values[-2] if len(values) >= 2 else None
"""),
    _a("is_sorted", "searching", "list", "Return True if every element is at most the next one, else False.", """
def f(xs):
    for i in range(len(xs) - 1):
        if xs[i] > xs[i + 1]:
            return False
    return True
"""),
    _a("kth_smallest", "searching", "list_k", "Return the k-th smallest element of the list, counting from 1.", """
def f(xs, k):
    return sorted(xs)[k - 1]
"""),
    # --- strings ------------------------------------------------------------------------------
    _a("reverse_string", "strings", "string", "Return the string reversed.", """
def f(s):
    out = ""
    for ch in s:
        out = ch + out
    return out
"""),
    _a("is_palindrome", "strings", "palindromish", "Return True if the string reads the same forwards and backwards, else False.", """
def f(s):
    i, j = 0, len(s) - 1
    while i < j:
        if s[i] != s[j]:
            return False
        i += 1
        j -= 1
    return True
"""),
    _a("count_vowels", "strings", "string", "Return how many characters of the string are vowels (a, e, i, o, u).", """
def f(s):
    return sum(1 for ch in s if ch in "aeiou")
"""),
    _a("run_length_encode", "strings", "runs", "Encode runs of equal characters as the character followed by the run length; return the encoded string.", """
def f(s):
    out = ""
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and s[j] == s[i]:
            j += 1
        out += s[i] + str(j - i)
        i = j
    return out
"""),
    _a("dedupe_chars", "strings", "runs", "Return the string with every character kept only at its first occurrence.", """
def f(s):
    out = ""
    for ch in s:
        if ch not in out:
            out += ch
    return out
"""),
    _a("common_prefix", "strings", "prefixed_pair", "Return the longest string that both strings start with.", """
def f(a, b):
    i = 0
    while i < len(a) and i < len(b) and a[i] == b[i]:
        i += 1
    return a[:i]
"""),
    _a("is_anagram", "strings", "anagramish", "Return True if the two strings contain the same characters the same number of times, else False.", """
def f(a, b):
    return sorted(a) == sorted(b)
"""),
    _a("char_counts", "strings", "runs", "Return a dictionary from each character to the number of times it occurs, in order of first occurrence.", """
def f(s):
    counts = {}
    for ch in s:
        counts[ch] = counts.get(ch, 0) + 1
    return counts
"""),
    _a("first_unique", "strings", "runs", "Return the index of the first character that occurs exactly once, or -1 if there is none.", """
def f(s):
    for i, ch in enumerate(s):
        if s.count(ch) == 1:
            return i
    return -1
"""),
    _a("reverse_words", "strings", "sentence", "Return the words of the sentence in reverse order, joined by single spaces.", """
def f(s):
    return " ".join(reversed(s.split()))
"""),
    _a("count_occurrences", "strings", "text_and_pattern", "Return how many times the pattern occurs in the text, overlapping occurrences included.", """
def f(text, pattern):
    n = 0
    for i in range(len(text) - len(pattern) + 1):
        if text[i:i + len(pattern)] == pattern:
            n += 1
    return n
"""),
    _a("hamming", "strings", "equal_strings", "Return the number of positions at which the two equally long strings differ.", """
def f(a, b):
    return sum(1 for x, y in zip(a, b) if x != y)
"""),
    _a("longest_run", "strings", "runs", "Return the length of the longest run of one repeated character.", """
def f(s):
    best = run = 0
    prev = None
    for ch in s:
        run = run + 1 if ch == prev else 1
        prev = ch
        best = max(best, run)
    return best
"""),
    _a("swap_case_alternate", "strings", "string", "Return the string with characters at even positions upper-cased and the others unchanged.", """
def f(s):
    return "".join(ch.upper() if i % 2 == 0 else ch for i, ch in enumerate(s))
"""),
    _a("interleave_strings", "strings", "two_strings", "Interleave the two strings character by character, then append what remains of the longer one.", """
def f(a, b):
    out = ""
    for i in range(max(len(a), len(b))):
        if i < len(a):
            out += a[i]
        if i < len(b):
            out += b[i]
    return out
"""),
    # --- number theory ------------------------------------------------------------------------
    _a("gcd", "numbers", "two_pos", "Return the greatest common divisor of the two numbers (Euclid's algorithm).", """
def f(a, b):
    while b:
        a, b = b, a % b
    return a
"""),
    _a("lcm", "numbers", "two_pos", "Return the least common multiple of the two numbers.", """
def f(a, b):
    x, y = a, b
    while y:
        x, y = y, x % y
    return a * b // x
"""),
    _a("is_prime", "numbers", "int", "Return True if the number is prime, else False.", """
def f(n):
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True
"""),
    _a("factorial", "numbers", "small_int", "Return the product of the numbers from 1 to n (1 for n = 0).", """
def f(n):
    out = 1
    for k in range(2, n + 1):
        out *= k
    return out
"""),
    _a("fibonacci", "numbers", "int", "Return the n-th Fibonacci number, with f(0) = 0 and f(1) = 1.", """
def f(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
"""),
    _a("digit_sum", "numbers", "big_int", "Return the sum of the decimal digits of the number.", """
def f(n):
    total = 0
    while n > 0:
        total += n % 10
        n //= 10
    return total
"""),
    _a("digital_root", "numbers", "big_int", "Repeatedly replace the number by the sum of its digits until one digit remains; return it.", """
def f(n):
    while n >= 10:
        n = sum(int(d) for d in str(n))
    return n
"""),
    _a("count_divisors", "numbers", "pos_int", "Return how many positive whole numbers divide the number.", """
def f(n):
    return sum(1 for d in range(1, n + 1) if n % d == 0)
"""),
    _a("prime_factors", "numbers", "pos_int", "Return the prime factors of the number in ascending order, with repetition.", """
def f(n):
    out = []
    d = 2
    while n > 1:
        while n % d == 0:
            out.append(d)
            n //= d
        d += 1
    return out
"""),
    _a("to_binary", "numbers", "int", "Return the binary representation of the number as a string of 0s and 1s ('0' for zero).", """
def f(n):
    if n == 0:
        return "0"
    out = ""
    while n > 0:
        out = str(n % 2) + out
        n //= 2
    return out
"""),
    _a("collatz_steps", "numbers", "pos_int", "Count the steps to reach 1 when an even number is halved and an odd one becomes three times itself plus one.", """
def f(n):
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps
"""),
    _a("power_mod", "numbers", "power_mod", "Return base to the power exp, modulo m, by repeated squaring.", """
def f(base, exp, m):
    result = 1
    base %= m
    while exp > 0:
        if exp % 2 == 1:
            result = result * base % m
        base = base * base % m
        exp //= 2
    return result
"""),
    _a("is_perfect", "numbers", "perfectish", "Return True if the number equals the sum of its proper divisors, else False.", """
def f(n):
    return n > 1 and sum(d for d in range(1, n) if n % d == 0) == n
"""),
    _a("triangular", "numbers", "int", "Return the sum of the numbers from 1 to n.", """
def f(n):
    total = 0
    for k in range(1, n + 1):
        total += k
    return total
"""),
    _a("reverse_digits", "numbers", "big_int", "Return the number with its decimal digits in reverse order.", """
def f(n):
    out = 0
    while n > 0:
        out = out * 10 + n % 10
        n //= 10
    return out
"""),
    # --- lists ----------------------------------------------------------------------------------
    _a("running_sum", "lists", "list", "Return the list of prefix sums: element i is the sum of the first i + 1 elements.", """
def f(xs):
    out, total = [], 0
    for x in xs:
        total += x
        out.append(total)
    return out
"""),
    _a("rotate_left", "lists", "list_k0", "Rotate the list left by k positions (k taken modulo the length); return the new list.", """
def f(xs, k):
    if not xs:
        return []
    k %= len(xs)
    return xs[k:] + xs[:k]
"""),
    _a("unique_in_order", "lists", "list_runs", "Return the list without consecutive repeats (each run of equal elements kept once).", """
def f(xs):
    out = []
    for x in xs:
        if not out or out[-1] != x:
            out.append(x)
    return out
"""),
    _a("differences", "lists", "list", "Return the list of differences between each element and the one before it.", """
def f(xs):
    return [xs[i] - xs[i - 1] for i in range(1, len(xs))]
"""),
    _a("max_subarray", "lists", "list_nonempty", "Return the largest sum of a non-empty run of consecutive elements (Kadane's algorithm).", """
def f(xs):
    best = cur = xs[0]
    for x in xs[1:]:
        cur = max(x, cur + x)
        best = max(best, cur)
    return best
"""),
    _a("two_sum", "lists", "list_target", "Return True if two elements at different positions add up to the target, else False.", """
def f(xs, target):
    seen = set()
    for x in xs:
        if target - x in seen:
            return True
        seen.add(x)
    return False
"""),
    _a("move_zeros", "lists", "list_zeros", "Move every zero to the end of the list, keeping the order of the other elements.", """
def f(xs):
    nonzero = [x for x in xs if x != 0]
    return nonzero + [0] * (len(xs) - len(nonzero))
"""),
    _a("majority", "lists", "list_runs", "Return the element that occurs more often than half the length, or None if there is none.", """
def f(xs):
    for x in xs:
        if xs.count(x) * 2 > len(xs):
            return x
    return None
"""),
    _a("count_inversions", "lists", "list", "Return the number of pairs of positions i < j whose elements are in decreasing order.", """
def f(xs):
    n = 0
    for i in range(len(xs)):
        for j in range(i + 1, len(xs)):
            if xs[i] > xs[j]:
                n += 1
    return n
"""),
    _a("chunk_sums", "lists", "list_k", "Split the list into consecutive chunks of k elements (the last may be shorter); return the sum of each chunk.", """
def f(xs, k):
    return [sum(xs[i:i + k]) for i in range(0, len(xs), k)]
"""),
    _a("merge_sorted", "lists", "two_sorted", "Merge two ascending lists into one ascending list.", """
def f(a, b):
    i = j = 0
    out = []
    while i < len(a) and j < len(b):
        if a[i] <= b[j]:
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    return out + a[i:] + b[j:]
"""),
    # --- dynamic programming --------------------------------------------------------------------
    _a("climb_stairs", "dynamic programming", "int", "Count the ways to climb n stairs taking 1 or 2 steps at a time.", """
def f(n):
    a, b = 1, 1
    for _ in range(n):
        a, b = b, a + b
    return a
"""),
    _a("coin_ways", "dynamic programming", "int", "Count the ways to make the amount from coins of 1, 2 and 5 (order does not matter).", """
def f(amount):
    ways = [1] + [0] * amount
    for coin in (1, 2, 5):
        for v in range(coin, amount + 1):
            ways[v] += ways[v - coin]
    return ways[amount]
"""),
    _a("min_coins", "dynamic programming", "int", "Return the fewest coins of 1, 3 and 4 that make the amount.", """
def f(amount):
    best = [0] + [amount + 1] * amount
    for v in range(1, amount + 1):
        for coin in (1, 3, 4):
            if coin <= v:
                best[v] = min(best[v], best[v - coin] + 1)
    return best[amount]
"""),
    _a("lcs_length", "dynamic programming", "two_strings", "Return the length of the longest common subsequence of the two strings.", """
def f(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table[len(a)][len(b)]
"""),
    _a("edit_distance", "dynamic programming", "two_strings", "Return the fewest single-character insertions, deletions or substitutions that turn the first string into the second.", """
def f(a, b):
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        prev = cur
    return prev[len(b)]
"""),
    _a("lis_length", "dynamic programming", "list", "Return the length of the longest strictly increasing subsequence of the list.", """
def f(xs):
    best = []
    for i in range(len(xs)):
        best.append(1 + max([best[j] for j in range(i) if xs[j] < xs[i]], default=0))
    return max(best, default=0)
"""),
    _a("knapsack", "dynamic programming", "knapsack", "Given item weights, item values and a capacity, return the largest total value of items (each used at most once) whose weights fit in the capacity.", """
def f(weights, values, capacity):
    best = [0] * (capacity + 1)
    for w, v in zip(weights, values):
        for c in range(capacity, w - 1, -1):
            best[c] = max(best[c], best[c - w] + v)
    return best[capacity]
"""),
    _a("grid_paths", "dynamic programming", "grid_size", "Count the paths from the top-left to the bottom-right corner of a rows x cols grid moving only right or down.", """
def f(rows, cols):
    table = [[1] * cols for _ in range(rows)]
    for r in range(1, rows):
        for c in range(1, cols):
            table[r][c] = table[r - 1][c] + table[r][c - 1]
    return table[rows - 1][cols - 1]
"""),
    # --- graphs ---------------------------------------------------------------------------------
    _a("bfs_order", "graphs", "graph_start", "Breadth-first search from the start node over the undirected edges, visiting neighbours in ascending order; return the nodes in the order visited.", """
def f(n, edges, start):
    adj = {v: [] for v in range(n)}
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    order, queue, seen = [], [start], {start}
    while queue:
        v = queue.pop(0)
        order.append(v)
        for w in sorted(adj[v]):
            if w not in seen:
                seen.add(w)
                queue.append(w)
    return order
"""),
    _a("dfs_order", "graphs", "graph_start", "Depth-first search from the start node over the undirected edges, trying neighbours in ascending order; return the nodes in the order first visited.", """
def f(n, edges, start):
    adj = {v: [] for v in range(n)}
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    order = []

    def visit(v):
        order.append(v)
        for w in sorted(adj[v]):
            if w not in order:
                visit(w)

    visit(start)
    return order
"""),
    _a("count_components", "graphs", "graph", "Return the number of connected components of the undirected graph with nodes 0..n-1.", """
def f(n, edges):
    parent = list(range(n))

    def root(v):
        while parent[v] != v:
            v = parent[v]
        return v

    for a, b in edges:
        parent[root(a)] = root(b)
    return len({root(v) for v in range(n)})
"""),
    _a("shortest_path", "graphs", "graph_two_nodes", "Return the fewest edges on a path between the two nodes of the undirected graph, or -1 if there is none.", """
def f(n, edges, source, target):
    adj = {v: set() for v in range(n)}
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    dist = {source: 0}
    frontier = [source]
    while frontier:
        nxt = []
        for v in frontier:
            for w in adj[v]:
                if w not in dist:
                    dist[w] = dist[v] + 1
                    nxt.append(w)
        frontier = nxt
    return dist.get(target, -1)
"""),
    _a("degrees", "graphs", "graph", "Return the list of node degrees of the undirected graph, for nodes 0..n-1.", """
def f(n, edges):
    deg = [0] * n
    for a, b in edges:
        deg[a] += 1
        deg[b] += 1
    return deg
"""),
    _a("has_cycle", "graphs", "forest", "Return True if the undirected graph (no repeated edges) contains a cycle, else False.", """
def f(n, edges):
    parent = list(range(n))

    def root(v):
        while parent[v] != v:
            v = parent[v]
        return v

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra == rb:
            return True
        parent[ra] = rb
    return False
"""),
    _a("topological_order", "graphs", "dag", "Return a topological order of the directed acyclic graph, always taking the smallest available node next.", """
def f(n, edges):
    indegree = [0] * n
    for a, b in edges:
        indegree[b] += 1
    order = []
    ready = [v for v in range(n) if indegree[v] == 0]
    while ready:
        v = min(ready)
        ready.remove(v)
        order.append(v)
        for a, b in edges:
            if a == v:
                indegree[b] -= 1
                if indegree[b] == 0:
                    ready.append(b)
    return order
"""),
    # --- matrices -------------------------------------------------------------------------------
    _a("transpose", "matrices", "matrix", "Return the transpose of the matrix (rows become columns).", """
def f(m):
    return [[m[r][c] for r in range(len(m))] for c in range(len(m[0]))]
"""),
    _a("matrix_trace", "matrices", "square", "Return the sum of the main diagonal of the square matrix.", """
def f(m):
    return sum(m[i][i] for i in range(len(m)))
"""),
    _a("spiral", "matrices", "matrix", "Return the elements of the matrix in clockwise spiral order starting at the top-left corner.", """
def f(m):
    m = [list(row) for row in m]
    out = []
    while m:
        out += m.pop(0)
        m = [list(row) for row in zip(*m)][::-1]
    return out
"""),
]
