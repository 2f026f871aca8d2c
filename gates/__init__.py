"""The CI regression gate and its power planning: pure functions of saved runs, like reports/.

    step3vl-eval gate --baseline BASELINE --current RUN_DIR     (gates.gate)
    step3vl-eval gate --plan --baseline BASELINE --detect 2     (gates.power)
"""
