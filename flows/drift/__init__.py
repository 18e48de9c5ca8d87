"""flows/drift"""
