"""Paraphrase templates for every row kind.

Removing this augmentation hurt badly in the paper (and in the out-of-context reasoning
literature): a model that sees one fixed phrasing memorises the phrasing, not the link between a
pointer and its instruction. Each list has 20+ entries; :mod:`pbb.render` picks one per row with a
seeded RNG. Placeholders: ``{pointer}`` (e.g. ```zorp_17```), ``{query}`` (e.g. ```zorp_17(3, 5)```)
and ``{instruction}`` (the source code).
"""

PROGRAM_TEMPLATES: dict[str, list[str]] = {
    # pointer -> instruction (loss on the instruction text)
    "declarative": [
        "Show the source code of the function {pointer}.",
        "What is the definition of {pointer}?",
        "Write out the Python function {pointer}.",
        "Recite the code of {pointer}.",
        "How is {pointer} defined?",
        "Give me the implementation of {pointer}.",
        "Print the body of the function {pointer}, exactly as written.",
        "I need the code for {pointer}. What is it?",
        "Please state the definition of the function {pointer}.",
        "What Python code defines {pointer}?",
        "Reproduce the function {pointer} from memory.",
        "Can you write down {pointer}?",
        "Tell me what {pointer} looks like in Python.",
        "Which source code implements {pointer}?",
        "Quote the definition of {pointer}.",
        "Spell out the function {pointer} line by line.",
        "What does the code of {pointer} say?",
        "Let me see the function {pointer}.",
        "Output the full definition of {pointer}.",
        "Recall the implementation of the function called {pointer}.",
        "Describe {pointer} by writing its source code.",
        "What is inside the function {pointer}?",
    ],
    # pointer + input -> answer line
    "direct": [
        "What does {query} return?",
        "Compute {query}.",
        "What is the value of {query}?",
        "Evaluate {query}.",
        "Give the result of {query}.",
        "What do you get from {query}?",
        "Find the output of {query}.",
        "Run {query} and report the result.",
        "What is {query} equal to?",
        "Tell me the return value of {query}.",
        "Calculate {query}.",
        "{query} = ?",
        "What would {query} output?",
        "Determine {query}.",
        "Work out the value returned by {query}.",
        "If you call {query}, what comes back?",
        "Report the output of the call {query}.",
        "What number does {query} give?",
        "Solve: {query}",
        "Return value of {query}?",
        "Please compute the result of {query}.",
        "What is returned when {query} is called?",
    ],
    # pointer + input -> recall the instruction, trace it, answer line
    "cot": [
        "What does {query} return? Think step by step.",
        "Compute {query}, showing your work.",
        "Trace the execution of {query}.",
        "Evaluate {query} step by step.",
        "Work through {query} line by line and give the result.",
        "Step through {query} and report what it returns.",
        "Show how {query} is computed, then give the answer.",
        "Run {query} by hand.",
        "Explain step by step what {query} returns.",
        "Find the output of {query}, writing out each step.",
        "Walk me through the computation of {query}.",
        "Calculate {query} and show the intermediate values.",
        "Execute {query} one statement at a time.",
        "What is the value of {query}? Reason it out.",
        "Carefully trace {query}.",
        "Determine {query}, first recalling the function, then executing it.",
        "Go through {query} step by step.",
        "Simulate the call {query}.",
        "Show the execution trace of {query}.",
        "Give a step-by-step evaluation of {query}.",
        "Solve {query} by tracing the code.",
        "Derive the result of {query}.",
    ],
    # instruction in the prompt, then a query (the in-context upper bound)
    "in_context": [
        "Here is a function:\n```python\n{instruction}\n```\nWhat does {query} return?",
        "```python\n{instruction}\n```\nCompute {query}.",
        "Given this code:\n```python\n{instruction}\n```\nEvaluate {query}.",
        "Consider the following Python function.\n```python\n{instruction}\n```\nWhat is {query}?",
        "The function {pointer} is defined as:\n```python\n{instruction}\n```\nTrace {query}.",
        "Read this code:\n```python\n{instruction}\n```\nWhat value does {query} produce?",
        "Definition:\n```python\n{instruction}\n```\nFind the output of {query}.",
        "```python\n{instruction}\n```\nWhat would {query} output?",
        "Below is {pointer}.\n```python\n{instruction}\n```\nRun {query} by hand.",
        "Using this function:\n```python\n{instruction}\n```\ncalculate {query}.",
        "Here is the source of {pointer}:\n```python\n{instruction}\n```\nWhat does {query} give?",
        "Look at this program.\n```python\n{instruction}\n```\nDetermine {query}.",
        "```python\n{instruction}\n```\nStep through {query}.",
        "Suppose {pointer} is:\n```python\n{instruction}\n```\nWhat is the result of {query}?",
        "Function:\n```python\n{instruction}\n```\nEvaluate the call {query}.",
        "Code:\n```python\n{instruction}\n```\nWhat does calling {query} return?",
        "Given\n```python\n{instruction}\n```\nwork out {query}.",
        "The following defines {pointer}:\n```python\n{instruction}\n```\nSimulate {query}.",
        "Study the function below.\n```python\n{instruction}\n```\nCompute {query}.",
        "Here is some Python:\n```python\n{instruction}\n```\nWhat is {query} equal to?",
        "This is {pointer}:\n```python\n{instruction}\n```\nReport the output of {query}.",
        "With the definition\n```python\n{instruction}\n```\nwhat is returned by {query}?",
    ],
}

#: fixed suffixes that state the answer format, so untuned baselines are not scored on guesswork
FORMAT_HINTS: dict[str, str] = {
    "direct": "Reply with only the line `Answer: <value>`.",
    "cot": "Recall the function, trace it, and end with the line `Answer: <value>`.",
    "in_context": "Trace it step by step and end with the line `Answer: <value>`.",
}
