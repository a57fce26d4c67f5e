"""Skill banks: structured advice per task type, the privileged context of SDAR's teacher.

Built in the skillbank issue.
"""
