"""flows/labelling"""
